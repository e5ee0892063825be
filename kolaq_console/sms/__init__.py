"""SMS and WhatsApp through Twilio: message rows, phone numbers, segments, transports,
delivery and status callbacks. (A regular package, so packages.find ships it and the import
contracts see it.)
"""
