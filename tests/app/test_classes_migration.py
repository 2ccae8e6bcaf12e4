"""Migration 0005: sets that already hold masks get classes from their largest mask value."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Connection, text

from app.db import migrate
from app.db.session import make_engine

NOW = "2026-12-01 10:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("fresh_pg")
    )
    found = make_engine(url)
    yield found
    found.dispose()


def _one_case(c: Connection) -> None:
    """A project, a dataset, an image file and one case with ids 1, as rows (any revision)."""
    c.execute(text(f"INSERT INTO projects (id, name, created_at) VALUES (1, 'p', '{NOW}')"))
    c.execute(
        text(
            "INSERT INTO datasets (id, project_id, name, description, created_at) "
            f"VALUES (1, 1, 'd', '', '{NOW}')"
        )
    )
    c.execute(
        text(
            "INSERT INTO files (id, sha256, size_bytes, name, format, created_at) "
            f"VALUES (1, 'x', 1, 'a.png', 'png', '{NOW}')"
        )
    )
    c.execute(
        text(
            "INSERT INTO cases (id, dataset_id, name, image_file_id, shape, spacing, affine, "
            f"channels, created_at) VALUES (1, 1, 'a', 1, '[2, 2]', '[1, 1]', '[]', 1, '{NOW}')"
        )
    )


def test_sets_with_masks_get_class_names_for_their_values(engine):
    migrate.upgrade(engine, "0004")
    with engine.begin() as c:
        _one_case(c)
        for set_id in (1, 2):
            c.execute(
                text(
                    "INSERT INTO annotation_sets (id, dataset_id, name, description, created_at) "
                    f"VALUES ({set_id}, 1, 's{set_id}', '', '{NOW}')"
                )
            )
        c.execute(
            text(
                "INSERT INTO masks (id, annotation_set_id, case_id, file_id, max_label, "
                f"created_at) VALUES (1, 1, 1, 1, 3, '{NOW}')"
            )
        )
    migrate.upgrade(engine)
    with engine.connect() as c:
        rows = c.execute(
            text("SELECT id, classes, classes_declared FROM annotation_sets ORDER BY id")
        ).all()
    found = {i: (json.loads(v) if isinstance(v, str) else v, bool(d)) for i, v, d in rows}
    assert found == {
        1: ({"class_1": 1, "class_2": 2, "class_3": 3}, False),
        2: ({}, False),
    }
    migrate.downgrade(engine, "0004")
    migrate.upgrade(engine)


def test_an_sqlite_database_holding_masks_upgrades_from_before_the_review_loop(tmp_path):
    """0003 copies ``annotation_sets`` (SQLite alters by copying), which ``masks`` names."""
    engine = make_engine(f"sqlite:///{tmp_path / 'older.db'}")
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as c:
            _one_case(c)
            c.execute(
                text(
                    "INSERT INTO annotation_sets (id, dataset_id, name, description, created_at) "
                    f"VALUES (1, 1, 's', '', '{NOW}')"
                )
            )
            c.execute(
                text(
                    "INSERT INTO masks (id, annotation_set_id, case_id, file_id, max_label, "
                    f"created_at) VALUES (1, 1, 1, 1, 1, '{NOW}')"
                )
            )
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
        with engine.connect() as c:
            assert c.execute(text("SELECT annotation_set_id FROM masks")).scalar_one() == 1
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()
