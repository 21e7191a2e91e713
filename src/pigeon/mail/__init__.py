"""Email: providers (console outbox, SMTP) and the templates the messages are made from."""
