"""The Flask extensions, created once here and bound to the app in create_app(), and AppPart: how the app holds
Keyfob's own parts (each core's settings and collaborators)."""

from typing import ClassVar, Self

from flask import Flask, current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Named constraints let Alembic alter and drop them, on SQLite (batch mode) as on PostgreSQL.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


# What a request has just committed stays loaded: answering with it needs no second round trip, and a database lost
# right after a commit cannot turn a made key into an error answer with its secret never shown.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


class AppPart:
    """A part of Keyfob the app holds one of (a core's settings and collaborators), found by type, not by string:
    `KeyCore.of(app)`, or `KeyCore.current()` inside a request or app context."""

    EXTENSION: ClassVar[str]

    @classmethod
    def of(cls, app: Flask) -> Self:
        return app.extensions[cls.EXTENSION]

    @classmethod
    def current(cls) -> Self:
        return current_app.extensions[cls.EXTENSION]

    def install(self, app: Flask) -> None:
        app.extensions[self.EXTENSION] = self
