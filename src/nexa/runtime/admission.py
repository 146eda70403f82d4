"""Who makes room for a load: the budgets models share (RAM, each GPU, model places), whether a load fits, which
loaded models give way (least recently used first, idle before busy, and only those that free what is short),
and what a load that cannot fit is told. Pure policy: the manager does the waiting and the unloading."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nexa.errors import Overloaded
from nexa.runtime.loaded import LoadedModel
from nexa.runtime.memory import Footprint, gib


@dataclass(frozen=True)
class Budgets:
    ram: int
    devices: Mapping[str, int]  # GPU name -> bytes
    places: int  # --max-loaded-models; 0 is no limit

    def short(self, need: Footprint, used: Footprint, places: int) -> tuple[bool, set[str], bool]:
        """What keeps `need` from fitting beside `used`: RAM, which GPUs, a model place."""
        devices = {name for name, size in need.devices.items()
                   if name in self.devices and used.devices.get(name, 0) + size > self.devices[name]}
        return used.ram + need.ram > self.ram, devices, bool(self.places and places >= self.places)

    def fits(self, need: Footprint, used: Footprint, places: int) -> bool:
        return not any(self.short(need, used, places))

    def helps(self, held: Footprint, need: Footprint, used: Footprint, places: int) -> bool:
        """Whether unloading a model that holds `held` frees something `need` is short of."""
        ram, devices, place = self.short(need, used, places)
        return place or (ram and held.ram > 0) or any(held.devices.get(name, 0) > 0 for name in devices)

    def victims(self, candidates: Iterable[LoadedModel], need: Footprint, used: Footprint,
                places: int) -> list[LoadedModel]:
        """The models to take out of service, in `candidates`' order, so that `need` fits once they close; none
        if it fits already or if taking all that help would not be enough."""
        chosen: list[LoadedModel] = []
        for victim in candidates:
            if self.fits(need, used, places):
                break
            if self.helps(victim.footprint, need, used, places):
                chosen.append(victim)
                used, places = used - victim.footprint, places - 1
        return chosen if self.fits(need, used, places) else []

    def too_big(self, model_id: str, need: Footprint) -> Overloaded | None:
        """A model larger than a whole budget can never load: the error that says so, with the fix."""
        smaller = f"give it a smaller context (--model-option {model_id}:ctx=2048 or kv_cache_type=q8_0)"
        if need.ram > self.ram:
            return Overloaded(
                f"model '{model_id}' needs about {gib(need.ram)} of RAM, more than the whole memory budget of "
                f"{gib(self.ram)}; raise --memory-budget or {smaller}", code="memory_budget",
            )
        for name, size in need.devices.items():
            if size > self.devices.get(name, size):
                return Overloaded(
                    f"model '{model_id}' needs about {gib(size)} on {name}, more than its device budget of "
                    f"{gib(self.devices[name])}; offload fewer layers (--model-option {model_id}:ngl=-1 lets the "
                    f"engine choose), raise --device-memory-budget or {smaller}", code="memory_budget",
                )
        return None

    def no_room(self, model_id: str, need: Footprint, used: Footprint, places: int,
                holders: Iterable[LoadedModel], waited: float) -> Overloaded:
        """The 503 for a load that found no room within `waited` seconds, naming who holds the budgets."""
        busy = ", ".join(f"{m.id} ({m.footprint.describe()})" for m in holders if m.in_flight)
        devices = "".join(f", {gib(used.devices.get(name, 0))} of the {gib(size)} budget on {name}"
                          for name, size in self.devices.items() if name in need.devices)
        return Overloaded(
            f"cannot load '{model_id}' (about {need.describe()}) within {waited:g} s: "
            f"{gib(used.ram)} of the {gib(self.ram)} memory budget{devices}"
            + (f" and {places} of {self.places} model places" if self.places else "")
            + f" are held by models serving requests ({busy or 'loads under way'}); retry when they finish, "
            "or raise --memory-budget / --max-loaded-models",
            retry_after=5,
            code="memory_budget",
        )


def eviction_order(models: Iterable[LoadedModel], now: float) -> list[LoadedModel]:
    """The models that may give way now, idle ones first, then least recently used first."""
    return sorted((m for m in models if m.drainable(now)), key=lambda m: (m.in_flight > 0, m.last_used))
