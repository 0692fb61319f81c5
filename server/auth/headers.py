"""Security headers on every answer, and a content security policy on the pages we serve.

The console and the H5 pages load only their own scripts, styles and images (blob: for the pay
code's QR, data: for ECharts' exports); no inline script runs, no other site may frame them.
The API's interactive docs (/api/v1/docs) are one of these pages: Swagger UI is vendored under
static/vendor/, so no third-party script runs on the console's origin.
"""

from __future__ import annotations

from flask import Flask, request

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # The staff page's scanner needs the camera, the resident's wheel the location: ours only.
    "Permissions-Policy": "camera=(self), geolocation=(self), microphone=()",
}
POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # computed widths (the survey's bars)
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    )
)
PAGES = ("/admin", "/h5", "/static/", "/public", "/api/v1/docs")


def init_app(app: Flask) -> None:
    @app.after_request
    def secure(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith(PAGES):
            response.headers.setdefault("Content-Security-Policy", POLICY)
        if app.config.get("SESSION_COOKIE_SECURE"):  # served over HTTPS: say so for a year
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
