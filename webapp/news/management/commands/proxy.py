"""Run nginx in front of gunicorn (the Procfile's `proxy`): render ops/nginx/nginx.conf.template
with this run's addresses and paths into a state folder of its own, then become nginx, in the
foreground, so that the process runner stops it like any other process."""

from __future__ import annotations

import grp
import html
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

OPS = Path(settings.BASE_DIR) / "ops" / "nginx"
# Debian keeps nginx in /usr/sbin, which a user's PATH often leaves out.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
INSTALL_HINT = ("nginx is not installed: install Debian's nginx (`make nginx`, or "
                "`sudo env RUNLEVEL=1 apt-get install -y nginx`), or name it with --nginx")
HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})")
UNIX_PATH_MAX = 107  # bytes in a unix socket's path (sockaddr_un), less its final NUL
HEADER_LINE_MAX = 8190  # the template's large_client_header_buffers (8k) less CRLF: gunicorn's limits
TEMPS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")
# nginx's own answers: status -> (title, detail). The same words whether JSON or a page.
ERRORS = {
    400: ("Bad request", "The request line or its headers could not be read."),
    408: ("Request timeout", "The request did not arrive in time."),
    405: ("Method not allowed", "This method is not served here."),
    411: ("Length required", "A request with a body must say its length (Content-Length) or send it chunked."),
    413: ("Body too large", "Body larger than {body_max} bytes."),
    414: ("URL too long", f"Request line longer than {HEADER_LINE_MAX} bytes."),
    431: ("Headers too large", f"Request headers too large: at most {HEADER_LINE_MAX} bytes a line, 32 KB in all."),
    500: ("Server error", "The proxy failed to answer."),
    501: ("Not implemented", "Transfer-Encoding other than chunked is not served."),
    502: ("Not answering", "The web server is not answering; try again in a moment."),
    503: ("Unavailable", "The web server is unavailable; try again in a moment."),
    504: ("Timed out", "The web server took too long to answer."),
    505: ("HTTP version not supported", "Only HTTP/1.0 and HTTP/1.1 are served."),
}


def _quoted(path: Path | str, *, trailing_slash: bool = False) -> str:
    """A path as one token of nginx's configuration."""
    text = str(path) + ("/" if trailing_slash else "")
    if any(c in text for c in '"\\$\n'):
        raise CommandError(f"{text}: nginx's configuration cannot take a path with \", \\, $ or a line break")
    return f'"{text}"'


def _port(listen: str) -> int:
    match = HOST_PORT.fullmatch(listen)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise CommandError(f"--listen {listen}: expected HOST:PORT (127.0.0.1:8000, 0.0.0.0:8080, [::1]:8000)")
    return int(match.group(2))


def _upstream(upstream: str) -> str:
    """gunicorn's address as nginx's upstream `server`: unix:PATH (a relative path from the
    working directory, as gunicorn binds it) or HOST:PORT."""
    if upstream.startswith("unix:"):
        path = os.path.abspath(upstream.removeprefix("unix:"))
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise CommandError(f"--upstream {upstream}: the socket's full path {path} is over {UNIX_PATH_MAX} bytes, "
                               "the most a unix socket's path may have; bind gunicorn to a shorter one")
        return _quoted(f"unix:{path}")
    if HOST_PORT.fullmatch(upstream) is None:
        raise CommandError(f"--upstream {upstream}: expected unix:PATH or HOST:PORT")
    return upstream


def _user() -> str:
    """nginx started by root runs its workers as `nobody`, who may not read the static files nor
    reach gunicorn's socket: they run as the user who started it instead (as the web does)."""
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def render(template: str, values: dict[str, str]) -> str:
    def fill(match: re.Match) -> str:
        if match.group(1) not in values:
            raise CommandError(f"nginx template: no value for {{{{{match.group(1)}}}}}")
        return values[match.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", fill, template)


def error_pages(folder: Path, body_max: int) -> None:
    """One JSON body and one HTML page per status nginx answers itself."""
    folder.mkdir(parents=True, exist_ok=True)
    page = (OPS / "error.html.template").read_text()
    for status, (title, detail) in ERRORS.items():
        detail = detail.format(body_max=body_max)
        (folder / f"{status}.json").write_text(json.dumps({"detail": detail}) + "\n")
        (folder / f"{status}.html").write_text(render(page, {"status": str(status), "title": html.escape(title),
                                                             "detail": html.escape(detail)}))


class Command(BaseCommand):
    help = "Run nginx in front of gunicorn: static files, slow clients, limits and its own errors."

    def add_arguments(self, parser) -> None:
        port = os.environ.get("PORT", "8000")
        parser.add_argument("--listen", default=f"127.0.0.1:{port}", help="address to serve (default %(default)s)")
        parser.add_argument("--upstream", default=f"unix:var/web-{port}.sock",
                            help="gunicorn's address: unix:PATH or HOST:PORT (default %(default)s)")
        parser.add_argument("--state-dir", type=Path,
                            help="where the rendered configuration, pid and temporary files go "
                                 "(default var/proxy-PORT)")
        parser.add_argument("--static-root", type=Path, default=Path(settings.STATIC_ROOT),
                            help="the collected static files, served at /static/ (default STATIC_ROOT)")
        parser.add_argument("--nginx", help="the nginx program (default: nginx on PATH or in /usr/sbin)")
        parser.add_argument("--check", action="store_true", help="render and test the configuration, then exit")

    def handle(self, *args, listen: str, upstream: str, state_dir: Path | None, static_root: Path,
               nginx: str | None, check: bool, **options) -> None:
        program = shutil.which(nginx or "nginx", path=SEARCH_PATH)
        if program is None:
            raise CommandError(f"{nginx} not found" if nginx else INSTALL_HINT)
        port = _port(listen)
        state = (state_dir or Path(settings.BASE_DIR) / "var" / f"proxy-{port}").resolve()
        body_max = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body_max = 0 if body_max is None else int(body_max)  # None: Django takes any size, and so does nginx's 0
        values = {"listen": listen, "upstream": _upstream(upstream), "body_max": str(body_max), "user": _user(),
                  "pid_file": _quoted(state / "nginx.pid"),
                  "errors_dir": _quoted(state / "errors", trailing_slash=True),
                  "static_root": _quoted(static_root.resolve(), trailing_slash=True),
                  **{f"temp_{name}": _quoted(state / "tmp" / name) for name in TEMPS}}
        try:
            for name in TEMPS:
                (state / "tmp" / name).mkdir(parents=True, exist_ok=True)
            error_pages(state / "errors", body_max)
            config = state / "nginx.conf"
            config.write_text(render((OPS / "nginx.conf.template").read_text(), values))
        except OSError as exc:
            raise CommandError(f"cannot write the proxy's files in {state}: {exc.strerror}") from None
        if not static_root.is_dir():
            self.stderr.write(f"{static_root} does not exist (`make db` collects the static files): "
                              "Django serves them instead")
        command = [program, "-p", str(state), "-c", str(config), "-e", "stderr"]
        if check:
            tested = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
            if tested.returncode:
                raise CommandError(f"nginx refuses {config}: {tested.stderr.strip()}")
            self.stdout.write(f"configuration ok: {config}")
            return
        self.stdout.write(f"nginx on http://{listen}/ in front of {upstream} (configuration {config})")
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(program, [*command, "-g", "daemon off;"])
