"""`flask seed-demo`: the demo data set, the Qian'an 2022 campaign of the seed plan laid from today,
with the business names, categories and addresses of its annex 2 and an admin."""

from __future__ import annotations

import secrets
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import sqlalchemy as sa

from ..auth import accounts
from ..campaign import enrolment
from ..campaign import file as campaign_file
from ..core import cache
from ..core.bank import with_check_digit
from ..core.time import utcnow
from ..extensions import db
from ..merchant import credit_code
from ..models import AdminUser, Campaign, Category, Enrolment, Merchant
from . import command
from .campaign import describe

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "qianan-2022.json"
QIANAN_DIVISION = "220723"  # 乾安县

# Annex 2: business names, categories and addresses. The contacts printed there are real
# people; the demo uses plainly fictitious ones instead.
MERCHANTS = [
    ("乾安县宾馆", "hotel", "乾安县丹青街"),
    ("乾安县如家快捷酒店有限公司", "hotel", "乾安县北转盘"),
    ("乾安县东方酒店管理有限公司", "hotel", "乾安县东方明珠新区"),
    ("乾安县泰安加油站有限公司", "fuel", "乾安镇民字村"),
    ("乾安县中星油气销售有限公司", "fuel", "乾安县交警大队旁"),
    ("乾安中油能源有限公司平安加油站", "fuel", "乾安镇鸣凤街（南门外道东）"),
    ("吉林省松苑石油销售有限责任公司", "fuel", "乾安县鸣字村S301省道南侧"),
    ("乾安万森油气有限责任公司", "fuel", "乾安镇民字村"),
    ("乾安县聚盛园服务餐饮有限公司", "restaurant", "乾安县西湖小镇楼下"),
    ("吉林省新华书店集团乾安县有限责任公司", "bookstore", "乾安县中心街"),
    ("乾安县电商进农村镇级服务中心、村级服务站", "farm_produce", "乾安县各乡镇服务中心及村级服务站"),
    ("第一书记旗舰店", "farm_produce", "乾安县东市场旁"),
]


def demo_rounds(now: datetime, tz: ZoneInfo, count: int = 7, every: int = 5, valid: int = 5) -> list[dict]:
    """Rounds from today: draws at 09:00 every five days (round 1 open at once), valid to 24:00 of day five."""
    today = now.astimezone(tz).date()
    rounds = []
    for k in range(count):
        day = today + timedelta(days=every * k)
        opens = datetime.combine(day, time(9), tzinfo=tz)
        if k == 0:
            opens = min(opens, now.astimezone(tz).replace(second=0, microsecond=0))
        deadline = datetime.combine(day + timedelta(days=valid), time(0), tzinfo=tz)
        rounds.append({"opens_at": opens.isoformat(), "valid_until": deadline.isoformat()})
    return rounds


def lay_demo(now: datetime, admin_username: str = "admin") -> dict:
    """Create the demo campaign, its merchants and an admin; flushes, never commits."""
    existing = db.session.scalar(sa.select(Campaign).where(Campaign.code == "qianan-2022"))
    if existing is not None:
        return {"campaign": existing, "created": False, "merchants": [], "admin_password": None}
    doc = campaign_file.read(EXAMPLE)
    tz = ZoneInfo(doc.data["campaign"]["timezone"])
    doc.data["rounds"] = demo_rounds(now, tz)
    plan, problems = campaign_file.check(doc)
    if problems:  # the shipped example is checked by the tests; this is a guard, not a path
        raise RuntimeError("; ".join(map(str, problems)))
    campaign = campaign_file.create(plan)
    categories = {c.code: c for c in db.session.scalars(sa.select(Category).where(Category.campaign_id == campaign.id))}
    merchants = []
    for n, (name, category, address) in enumerate(MERCHANTS, start=1):
        merchant = Merchant(
            name=name,
            credit_code=credit_code.make(QIANAN_DIVISION, f"MA{n:06d}"),
            address=address,
            contact_name=f"演示联系人{n:02d}",
            contact_phone=f"1000000{n:04d}",
            categories=[categories[category]],
            # Where its settlement is paid: a made-up UnionPay account with a valid check digit.
            bank_payee=name,
            bank_name="中国农业银行乾安县支行",
            bank_account=with_check_digit(f"622848{n:012d}"),
        )
        enrolled = Enrolment(merchant=merchant, campaign=campaign, status="applied", commitment_accepted_at=now)
        db.session.add_all([merchant, enrolled])
        db.session.flush()
        merchants.append((merchant, enrolment.approve(enrolled, now, "演示数据")))
    password = None
    if db.session.scalar(sa.select(AdminUser).where(AdminUser.username == admin_username)) is None:
        password = secrets.token_urlsafe(9)
        accounts.create_admin(admin_username, password, "admin")
    db.session.flush()
    return {"campaign": campaign, "created": True, "merchants": merchants, "admin_password": password}


def campaign_enrolments(campaign: Campaign) -> list[Enrolment]:
    return list(
        db.session.scalars(sa.select(Enrolment).where(Enrolment.campaign_id == campaign.id).order_by(Enrolment.id))
    )


@command("seed-demo")
@click.option(
    "--base-url", default="http://127.0.0.1:5000", show_default=True, help="Where the server answers, for the printout."
)
def seed_demo(base_url: str) -> None:
    """Load the Qian'an demo campaign (rounds from today), its 12 merchants and an admin."""
    result = lay_demo(utcnow())
    cache.forget()
    campaign = result["campaign"]
    if not result["created"]:
        click.echo(f"演示活动「{campaign.name}」已存在，未重复创建。")
    else:
        describe(campaign)
        click.echo(f"  商户 {len(result['merchants'])} 家（已审核通过，绑定码30天内有效、仅可使用一次）：")
        for merchant, code in result["merchants"]:
            click.echo(
                f"    [{merchant.id}] {merchant.name}（{merchant.categories[0].name}，{merchant.address}）绑定码 {code}"
            )
    flask = ".venv/bin/flask --app server"
    if result["admin_password"]:
        click.echo(f"管理员账号：admin  密码：{result['admin_password']}  （请妥善保存，只显示这一次）")
        click.echo(f"管理后台：{base_url}/admin/   （用上面的管理员账号登录）")
        click.echo(f"居民页面：{base_url}/h5/   店员核销页面：{base_url}/h5/staff   （用上面的商户绑定码绑定店员）")
    else:
        # A second run: the password and the codes were shown once, at the first; say how to get new ones.
        click.echo(f"管理后台：{base_url}/admin/   管理员账号 admin 的密码只在首次创建时显示；"
                   f"忘记密码可运行 {flask} admin reset-password admin 重置（新密码只显示一次）")  # fmt: skip
        merchants = ", ".join(f"[{e.merchant_id}] {e.merchant.name}" for e in campaign_enrolments(campaign))
        click.echo(f"店员绑定码只在签发时显示；为商户重新签发：{flask} merchant code 商户编号   商户：{merchants}")
        click.echo(f"居民页面：{base_url}/h5/   店员核销页面：{base_url}/h5/staff")
    click.echo(f"居民接口：{base_url}/api/v1/campaign   接口文档：{base_url}/api/v1/docs")
