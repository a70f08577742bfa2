"""Unit tests of updater.core.rollout and the plan's rollout rules: a stable, even share of
licenses from the license number alone."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tests.unit.test_plan import chain
from updater.core.builds import RepositoryView
from updater.core.errors import PlanError
from updater.core.plan import make_plan
from updater.core.rollout import Audience, Client, place

RNG = random.Random(14)
#: 10,000 license numbers shaped like the vendor's (digits, a dash, letters).
LICENSES = [f"{RNG.randrange(10**5):05}-{''.join(RNG.choices('ABCDEFGHJKLMNPQRSTUVWXYZ', k=3))}"
            for _ in range(10_000)]


@pytest.mark.parametrize("percent", [1, 5, 10, 25, 50, 75, 90, 99])
def test_the_share_offered_is_within_one_point_of_the_percentage(percent: float) -> None:
    offered = sum(Audience(percent).includes(1155, n, None) for n in LICENSES)
    assert abs(offered / len(LICENSES) * 100 - percent) <= 1.0, offered


def test_raising_the_percentage_never_drops_a_license() -> None:
    steps = [0, 1, 5, 10, 20, 50, 80, 100]
    sets = [{n for n in LICENSES if Audience(p).includes(1155, n, None)} for p in steps]
    for smaller, larger in zip(sets, sets[1:], strict=False):
        assert smaller <= larger
    assert (len(sets[0]), len(sets[-1])) == (0, len(set(LICENSES)))


def test_the_place_is_fixed_per_license_and_differs_per_build() -> None:
    assert place("12345-ABC", 1155) == place(" 12345-abc ", 1155)  # as update.ini may spell it
    first = {n for n in LICENSES if place(n, 1155) < 10}
    other = {n for n in LICENSES if place(n, 1160) < 10}
    assert len(first & other) < 0.2 * len(first)  # not always the same practices first


def test_channels_everyone_and_no_license() -> None:
    beta = Audience(0, ("beta",))
    assert beta.includes(1155, "12345-ABC", "beta")
    assert not beta.includes(1155, "12345-ABC", None)
    assert not beta.includes(1155, "12345-ABC", "stable")
    assert Audience().includes(1155, None, None) and Audience(100).includes(1155, None, None)
    assert not Audience(50).includes(1155, None, None)


def _rolled(percent: float, channels: tuple[str, ...] = ()) -> RepositoryView:
    builds = chain().builds
    return replace(chain(), builds=(*builds[:-1], replace(builds[-1],
                                                           audience=Audience(percent, channels))))


def test_the_plan_holds_back_what_the_rollout_does_not_offer_yet() -> None:
    view = _rolled(30, ("beta",))
    inside = next(n for n in LICENSES if place(n, 1155) < 30)
    outside = next(n for n in LICENSES if place(n, 1155) >= 30)
    assert make_plan(1150, view, Client(inside)).target == 1155
    held = make_plan(1150, view, Client(outside))
    assert (held.target, held.held_back) == (1152, (1155,))
    assert make_plan(1150, view, Client(outside, "beta")).target == 1155
    # the admin asks for it (on the vendor's advice): offered or not
    asked = make_plan(1150, view, Client(outside), build=1155)
    assert tuple(b.build for b in asked.builds) == (1152, 1155)
    assert make_plan(1148, view, Client(outside), build=1150).target == 1150


@pytest.mark.parametrize(("build", "message"), [
    (1149, "Build 1149 cannot be installed: it is not a published build above"),
    (1148, "Build 1148 cannot be installed"),
    (1150, "Build 1150 was withdrawn by the vendor: broken printing"),
])
def test_asking_for_a_build_that_cannot_be_had(build: int, message: str) -> None:
    with pytest.raises(PlanError, match=message) as raised:
        make_plan(1148, chain(1150), build=build)
    assert raised.value.exit_code == 21
