"""The card formats: Character Card V1 (bare fields), V2 (`chara_card_v2`, spec_version 2.0) and V3
(`chara_card_v3`, spec_version 3.x), read into one model. Wrong types are errors; a missing or null
optional field is empty, since many published cards leave fields out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bots.cards import CardError


def _text(v: Any) -> Any:
    return "" if v is None else v


def _list(v: Any) -> Any:
    return [] if v is None else v


Text = Annotated[str, BeforeValidator(_text)]
Texts = Annotated[list[str], BeforeValidator(_list)]


class CardData(BaseModel):
    """Every V2 field, plus the V3 additions (absent in older cards). Fields botfleet maps must have
    their spec's type; the ones it only reports as not used are taken as they come."""

    model_config = ConfigDict(extra="allow", strict=False)

    name: str
    description: Text = ""
    personality: Text = ""
    scenario: Text = ""
    first_mes: Text = ""
    mes_example: Text = ""
    creator_notes: Text = ""
    system_prompt: Text = ""
    post_history_instructions: Text = ""
    alternate_greetings: Any = None
    character_book: Any = None
    tags: Texts = []
    creator: Text = ""
    character_version: Text = ""
    extensions: Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)] = {}
    # V3
    nickname: str | None = None
    creator_notes_multilingual: Any = None
    source: Any = None
    group_only_greetings: Any = None
    creation_date: Any = None
    modification_date: Any = None
    assets: Any = None


@dataclass(frozen=True, slots=True)
class Card:
    version: int  # 1, 2 or 3
    data: CardData


V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")


def parse_card(obj: dict[str, Any]) -> Card:
    spec = obj.get("spec")
    if spec is None:
        if not isinstance(obj.get("name"), str):
            raise CardError("not a character card: no 'spec' and no V1 'name' field")
        return Card(1, _data({k: obj.get(k) for k in V1_FIELDS if k in obj}, ""))
    version = obj.get("spec_version")
    if spec == "chara_card_v2":
        if version != "2.0":
            raise CardError(f"spec_version {version!r} is not '2.0' for spec chara_card_v2")
        number = 2
    elif spec == "chara_card_v3":
        if not isinstance(version, str) or not version.startswith("3."):
            raise CardError(f"spec_version {version!r} is not '3.x' for spec chara_card_v3")
        number = 3
    else:
        raise CardError(f"unknown spec {spec!r} (expected chara_card_v2 or chara_card_v3)")
    data = obj.get("data")
    if not isinstance(data, dict):
        raise CardError("'data' is missing or not an object")
    return Card(number, _data(data, "data."))


def _data(raw: dict[str, Any], prefix: str) -> CardData:
    try:
        data = CardData.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = prefix + ".".join(str(p) for p in err["loc"])
        raise CardError(f"{where}: {err['msg'].lower()}") from None
    if not data.name.strip():
        raise CardError(f"{prefix}name is empty")
    return data
