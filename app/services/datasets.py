"""Datasets and their cases (the images)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.tables import Case, Dataset
from app.errors import Conflict, Invalid, NotFound
from app.services.checks import check_image
from app.services.dicom import is_dicom_dataset
from app.services.files import publishing
from app.services.pages import Page, paginate
from app.storage import Store
from app.uploads import Incoming
from imaging.errors import ErrorCode


def create_dataset(session: Session, project_id: int, name: str, description: str = "") -> Dataset:
    """A new, empty dataset. Commits."""
    dataset = Dataset(project_id=project_id, name=name, description=description)
    session.add(dataset)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            ErrorCode.DATASET_EXISTS, f"the project already has a dataset named '{name}'"
        ) from None
    return dataset


def list_datasets(session: Session, project_id: int, *, limit: int, offset: int) -> Page[Dataset]:
    query = select(Dataset).where(Dataset.project_id == project_id).order_by(Dataset.id)
    return paginate(session, query, limit=limit, offset=offset)


def get_dataset(session: Session, project_id: int, dataset_id: int) -> Dataset:
    """The project's dataset; another project's is as missing as one that does not exist."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.project_id != project_id:
        raise NotFound(ErrorCode.NOT_FOUND, f"no dataset {dataset_id} in this project")
    return dataset


def list_cases(session: Session, dataset: Dataset, *, limit: int, offset: int) -> Page[Case]:
    query = select(Case).where(Case.dataset_id == dataset.id).order_by(Case.name)
    return paginate(session, query, limit=limit, offset=offset)


def add_images(
    session: Session, store: Store, dataset: Dataset, files: list[Incoming]
) -> list[Case]:
    """Check every received image, then store them all as new cases; all or nothing. Commits."""
    if files and is_dicom_dataset(session, dataset.id):
        first = min(files, key=lambda f: f.case).name
        raise Invalid(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{first}: dataset {dataset.id} holds DICOM series; image files go into a dataset "
            "of their own",
            file=first,
        )
    existing = dict(_case_dims(session, dataset))
    infos = []
    for item in sorted(files, key=lambda f: f.case):
        if item.case in existing:
            raise Conflict(
                ErrorCode.CASE_EXISTS,
                f"{item.name}: dataset {dataset.id} already has a case named '{item.case}'; "
                "cases are never replaced",
                file=item.name,
            )
        infos.append((item, check_image(item)))
    dims = {len(info.shape) for _, info in infos} | set(existing.values())
    if len(dims) > 1:
        first = infos[0][0].name
        raise Invalid(
            ErrorCode.SHAPE_MISMATCH,
            f"{first}: a dataset holds either 2D images or 3D volumes, not both",
            file=first,
        )
    cases = []
    try:
        with publishing(session, store) as add_file:
            for item, info in infos:
                case = Case(
                    dataset_id=dataset.id,
                    name=item.case,
                    image=add_file(item.written, item.name),
                    shape=info.shape,
                    spacing=info.spacing,
                    affine=info.affine,
                    channels=info.channels,
                )
                session.add(case)
                cases.append(case)
    except IntegrityError:  # the same case name, uploaded at the same time by someone else
        raise Conflict(
            ErrorCode.CASE_EXISTS, f"dataset {dataset.id} received some of these cases meanwhile"
        ) from None
    return cases


def _case_dims(session: Session, dataset: Dataset) -> list[tuple[str, int]]:
    rows = session.execute(select(Case.name, Case.shape).where(Case.dataset_id == dataset.id))
    return [(name, len(shape)) for name, shape in rows]
