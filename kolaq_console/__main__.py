from kolaq_console.cli import main

main()
