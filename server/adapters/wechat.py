"""WeChat mini-program login: the `wx.login` code exchanged for an openid, behind an adapter."""

from __future__ import annotations

from typing import Protocol

import requests
from flask import Flask, current_app

from ..core.errors import ServiceUnavailable, Unauthorized


class WechatLogin(Protocol):
    def openid_for(self, code: str) -> str: ...


class DevLogin:
    """WECHAT_BACKEND=dev: the code is taken as the openid (development and tests only)."""

    def openid_for(self, code: str) -> str:
        return code


class Jscode2Session:
    """The real `jscode2session` exchange, configured by app id and secret."""

    def __init__(self, appid: str, secret: str, base_url: str, timeout_s: float = 5.0) -> None:
        self.appid, self.secret = appid, secret
        self.url = base_url.rstrip("/") + "/sns/jscode2session"
        self.timeout_s = timeout_s

    def openid_for(self, code: str) -> str:
        if not (self.appid and self.secret):
            raise ServiceUnavailable("微信登录尚未配置，请联系管理员")
        params = {
            "appid": self.appid,
            "secret": self.secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        try:
            answer = requests.get(self.url, params=params, timeout=self.timeout_s).json()
        except (requests.RequestException, ValueError) as exc:
            current_app.logger.warning("jscode2session failed: %s", exc)
            raise ServiceUnavailable("微信登录暂不可用，请稍后重试") from exc
        if answer.get("errcode") or not answer.get("openid"):
            # 40029 invalid code, 40163 code used, 45011 rate limited: all mean "log in again".
            current_app.logger.info("jscode2session refused: %s", answer.get("errcode"))
            raise Unauthorized("微信登录失败，请重新进入小程序")
        return str(answer["openid"])


def init_app(app: Flask) -> None:
    backend = app.config["WECHAT_BACKEND"]
    if backend == "dev":
        app.extensions["huigou.wechat"] = DevLogin()
    elif backend == "wechat":
        app.extensions["huigou.wechat"] = Jscode2Session(
            app.config["WECHAT_APPID"], app.config["WECHAT_SECRET"], app.config["WECHAT_API_BASE"]
        )
    else:
        raise RuntimeError(f"WECHAT_BACKEND must be 'wechat' or 'dev', not {backend!r}")


def login() -> WechatLogin:
    return current_app.extensions["huigou.wechat"]
