"""A stand-in for fluxd's notify API: answers 202 and appends each body, one
JSON document per line, to the file named by argv[2]. Port: argv[1]."""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/api/flux/v11/notify":
            with open(sys.argv[2], "ab") as f:
                f.write(body + b"\n")
            self.send_response(202)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
