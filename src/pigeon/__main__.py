from pigeon.cli.main import app

app()
