"""Gunicorn's settings for one Huigou app host: `gunicorn -c deploy/gunicorn.conf.py 'server:create_app()'`
(deploy/systemd/huigou-web.service). Each can be changed from the environment file
(deploy/huigou.env.example, the GUNICORN_* lines); the defaults are what production runs.
"""

import os


def _setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


# Where nginx reaches this host (the upstream's `server` lines in deploy/nginx/huigou.conf). The
# port must be reachable from the nginx hosts and the monitoring host only: the app believes the
# X-Forwarded-For of whoever connects (PROXY_HOPS=1).
bind = [address.strip() for address in _setting("GUNICORN_BIND", "0.0.0.0:8000").split(",") if address.strip()]

# The CPUs this process may run on (taskset, a cpuset), not all the machine's; elsewhere than Linux, all.
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# A draw or a redemption is Python work (README "Performance": the database side is one statement);
# on the 2-core machine the README's benchmarks ran 2 workers and more did not raise throughput.
# Twice the cores keeps one working while another waits on PostgreSQL, Redis or the SMS gateway.
workers = int(_setting("GUNICORN_WORKERS", str(cores * 2)))
# gthread with one thread, as README "Production" runs and its benchmarks measured: one request at
# a time per worker, like sync, but connections kept alive between requests, so nginx's keepalive to
# the hosts saves a connection per request (the sync worker closes every connection).
worker_class = _setting("GUNICORN_WORKER_CLASS", "gthread")
threads = int(_setting("GUNICORN_THREADS", "1"))
# Longer than nginx's keepalive_timeout to the hosts (60 s): nginx closes idle connections first.
keepalive = int(_setting("GUNICORN_KEEPALIVE", "75"))

timeout = int(_setting("GUNICORN_TIMEOUT", "30"))  # a worker silent this long is killed and replaced
graceful_timeout = int(_setting("GUNICORN_GRACEFUL_TIMEOUT", "30"))  # on stop or reload, to finish requests
# Each worker builds the app and opens its own database connections (no preload: connections are
# never shared across a fork), and a reload (SIGHUP) starts workers on the new code.
preload_app = False

# The app reads X-Forwarded-For and X-Forwarded-Proto itself (werkzeug's ProxyFix, PROXY_HOPS);
# gunicorn believes X-Forwarded-Proto only from these addresses. Set the nginx hosts' here.
forwarded_allow_ips = _setting("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# No access log: the app writes one JSON line per request on stderr (REQUEST_LOG), with the
# request's id; gunicorn's own messages go to stderr too, and systemd hands both to the journal.
accesslog = None
errorlog = "-"
loglevel = _setting("GUNICORN_LOG_LEVEL", "info")
proc_name = "huigou-web"

# gunicorn's control socket (gunicornc) only where asked for: systemd manages the process with
# signals (reload: HUP), and two instances on one machine would share the default path.
control_socket = _setting("GUNICORN_CONTROL_SOCKET", "gunicorn.ctl")
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")


def child_exit(server, worker):
    """A worker gone (crashed, timed out, replaced on reload): its live figures leave /metrics."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:  # an older release without /metrics: nothing to mark
        return
    multiprocess.mark_process_dead(worker.pid)
