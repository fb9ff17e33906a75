from batchops.cli import run

run()
