"""A stand-in for fluxd's notify API: answers 202 and appends each body, one
JSON document per line, to the file named by argv[2]. Port: argv[1]."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import fluxrecv  # noqa: E402


def record(body):
    with open(sys.argv[2], "ab") as f:
        f.write(body + b"\n")


fluxrecv.fluxd_server(int(sys.argv[1]), on_notify=record).serve_forever()
