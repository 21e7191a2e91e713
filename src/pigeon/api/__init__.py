"""The HTTP API: parse the request, call a service, encode the answer."""
