"""Local stand-ins for the outside services Pigeon talks to, speaking their real protocols."""
