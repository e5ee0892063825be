"""kolaq-console: background jobs and operations console of the Kolaq Bitters shop."""
