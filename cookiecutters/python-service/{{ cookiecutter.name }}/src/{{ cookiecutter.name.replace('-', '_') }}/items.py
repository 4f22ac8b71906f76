"""The example endpoint: replace it with the service's own API."""

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

router = APIRouter(prefix="/v1/items", tags=["items"])


class Item(BaseModel):
    id: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=100)


_ITEMS: dict[int, Item] = {1: Item(id=1, name="example")}


@router.get("/{item_id}", response_model=Item, responses={404: {"description": "No such item"}})
async def get_item(item_id: int) -> Item:
    item = _ITEMS.get(item_id)
    if item is None:
        raise HTTPException(status_code=404, detail=f"item {item_id} not found")
    return item
