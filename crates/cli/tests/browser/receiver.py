"""Small HTTP servers a scenario runs itself on 127.0.0.1: a `Receiver`
that records what the server under test delivers and answers the status it
is told to, and an `Attacker` site on another origin serving one page."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server:
    """A ThreadingHTTPServer on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, handler):
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self):
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        # The scenario's output is for its own checks and failures.
        pass


class _Recording(_Quiet):
    def do_POST(self):
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with owner.lock:
            owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = owner.status
        reply = b"received" if status < 400 else b"receiver told to fail"
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class Receiver(_Server):
    """Records every POST (path, headers, body) in `requests` and answers
    `status` (200 until the scenario changes it). Use as a context manager."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.status = 200
        super().__init__(_Recording)

    def count(self):
        with self.lock:
            return len(self.requests)

    def answer(self, status):
        """Answers `status` from now on."""
        with self.lock:
            self.status = status


class _Page(_Quiet):
    def do_GET(self):
        html = self.server.owner.html.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(html)))
        self.end_headers()
        self.wfile.write(html)


class Attacker(_Server):
    """Another origin serving `html` (set it before loading `base`) at every path."""

    def __init__(self):
        self.html = ""
        super().__init__(_Page)
