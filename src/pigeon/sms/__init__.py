"""SMS providers (console file, Twilio) and the message templates they send."""
