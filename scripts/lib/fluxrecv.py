"""Helpers shared by the Python harnesses in scripts/ (attack, bench-delivery,
bench-reload, soak, soak.d/fluxd.py). Standard library only.

Each harness imports this by putting scripts/lib on sys.path relative to its
own path, with bytecode writing turned off first, so no __pycache__ is left
in the tree:

    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    import fluxrecv
"""

import hashlib
import hmac
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASE_BIN = os.path.join(ROOT, "target/release/flux-recv")
NOTIFY_PATH = "/api/flux/v11/notify"


def die(msg):
    """A setup error: `<script>: msg` on stderr, exit status 2."""
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    sys.exit(2)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid, field):
    """A field of /proc/PID/status in kiB (VmRSS, VmHWM, …); 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


# ------------------------------------------------------------ the binary


def cargo_build_release():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def build_release_if_missing(binary):
    """`cargo build --release` when `binary` does not exist."""
    if not os.path.exists(binary):
        print("== building: cargo build --release")
        cargo_build_release()


# ------------------------------------------------------------ config and hooks


def hook_path(key):
    """The hook URL path of an endpoint whose key is `key`."""
    return "/hook/" + hashlib.sha256(key).hexdigest()


def github_config(api):
    """fluxrecv.yaml with one GitHub endpoint whose key is github.key."""
    return f"fluxRecvVersion: 1\napi: {api}\nendpoints:\n- source: GitHub\n  keyPath: github.key\n"


def write_github_config(directory, key, fluxd_port):
    """github.key and fluxrecv.yaml in `directory`, fluxd on 127.0.0.1:fluxd_port;
    returns (config path, hook path)."""
    with open(os.path.join(directory, "github.key"), "wb") as f:
        f.write(key)
    config = os.path.join(directory, "fluxrecv.yaml")
    with open(config, "w") as f:
        f.write(github_config(f"http://127.0.0.1:{fluxd_port}/api/flux"))
    return config, hook_path(key)


def push_body(branch, ssh_url):
    """A minimal GitHub push event of `branch` of the repository at `ssh_url`."""
    return json.dumps({"ref": f"refs/heads/{branch}", "repository": {"ssh_url": ssh_url}}).encode()


def push_headers(key, body):
    """The headers of a GitHub push delivery of `body`, signed with `key`."""
    return {"Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()}


# ------------------------------------------------------------ stand-in fluxd


def fluxd_server(port=0, on_notify=None, delay=0.0):
    """A stand-in fluxd on 127.0.0.1:port (0: any free port), not yet serving:
    202 to POST /api/flux/v11/notify (after `delay` seconds), whose body goes
    to on_notify(body); 404 to any other path."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if delay:
                time.sleep(delay)
            if self.path == NOTIFY_PATH:
                if on_notify is not None:
                    on_notify(body)
                self.send_response(202)
            else:
                self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)


class Fluxd:
    """fluxd_server() serving on a daemon thread; its port in .port."""

    def __init__(self, port=0, on_notify=None, delay=0.0):
        self.server = fluxd_server(port, on_notify, delay)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
