"""Console forms; every one carries Flask-WTF's CSRF token."""

import re

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional


class LoginForm(FlaskForm):
    username = StringField("用户名", validators=[DataRequired("请输入用户名"), Length(max=40)])
    password = PasswordField("密码", validators=[DataRequired("请输入密码"), Length(max=200)])


class ActionForm(FlaskForm):
    """A button that changes something, with an optional reason."""

    reason = StringField("理由", validators=[Optional(), Length(max=200, message="理由最多200字")])


def tier_quantities(form) -> dict[int, int] | None:
    """A quota form's quantity per tier (fields `tier-<id>`), or None if one is not a whole number."""
    wanted = {}
    for key, value in form.items():
        if re.fullmatch(r"tier-[0-9]{1,12}", key):
            if not re.fullmatch(r"[0-9]{1,9}", value.strip()):  # not "²", which isdigit() accepts
                return None
            wanted[int(key[5:])] = int(value)
    return wanted
