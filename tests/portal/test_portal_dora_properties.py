"""Invariants of the DORA definitions, for any events (hypothesis)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from actions_server.portal.dora import Dataset, compute, link_incidents
from actions_server.portal.model import DAY, Deployment, Incident

START, END = 1_717_200_000.0, 1_717_200_000.0 + 30 * DAY  # a 30-day window
SERVICES = ("a", "b")
times = st.floats(min_value=START - 10 * DAY, max_value=END + 5 * DAY, allow_nan=False)
shas = st.sampled_from([f"{i:02x}" * 20 for i in range(12)])


@st.composite
def datasets(draw: st.DrawFn) -> Dataset:
    data = Dataset()
    for sha in draw(st.lists(shas, unique=True, max_size=10)):
        for service in SERVICES:
            data.change_times[(service, sha)] = draw(times)
    for i in range(draw(st.integers(0, 12))):
        data.deployments.append(
            Deployment(
                id=f"d{i}",
                service=draw(st.sampled_from(SERVICES)),
                environment=draw(st.sampled_from(["production", "production", "staging"])),
                success=draw(st.booleans()) or draw(st.booleans()),
                time=draw(times),
                sha=draw(st.none() | shas),
                changes=tuple(draw(st.lists(shas, max_size=4))),
            )
        )
    for head in draw(st.lists(shas, unique=True, max_size=4)):
        data.push_commits[(draw(st.sampled_from(SERVICES)), head)] = set(draw(st.lists(shas, max_size=3)))
    for i in range(draw(st.integers(0, 6))):
        started = draw(times)
        data.incidents.append(
            Incident(
                id=f"i{i}",
                service=draw(st.sampled_from(SERVICES)),
                started_at=started,
                resolved_at=draw(st.none() | st.floats(min_value=started, max_value=started + 5 * DAY)),
                root_cause=draw(st.none() | shas),
            )
        )
    return data


@settings(max_examples=300, deadline=None)
@given(datasets(), st.sampled_from([{"a"}, {"b"}, {"a", "b"}]))
def test_lead_time_is_never_negative_and_ratios_stay_in_range(data: Dataset, services: set[str]) -> None:
    figures = compute(data, services, START, END)
    assert figures.lead_time_hours is None or figures.lead_time_hours > 0
    assert figures.restore_hours is None or figures.restore_hours >= 0
    assert figures.change_failure_rate is None or 0 <= figures.change_failure_rate <= 1
    assert figures.failed_deploys <= figures.deploys
    assert round(figures.per_day * 30) == figures.deploys


@settings(max_examples=300, deadline=None)
@given(datasets(), st.sampled_from(SERVICES), times, st.lists(shas, max_size=3))
def test_adding_a_successful_deploy_never_raises_the_change_failure_rate(
    data: Dataset, service: str, when: float, changes: list[str]
) -> None:
    before = compute(data, {service}, START, END).change_failure_rate
    extra = Deployment("new", service, "production", True, when, None, tuple(changes))
    after_data = Dataset([*data.deployments, extra], data.change_times, data.push_commits, data.incidents)
    # The deploy must not itself be blamed for an incident: the invariant is about deploys that
    # caused none. (One that "steals" an incident from an earlier deploy can raise the rate: see below.)
    assume("new" not in link_incidents(after_data).values())
    after = compute(after_data, {service}, START, END).change_failure_rate
    assert before is None or (after is not None and after <= before)


def test_a_deploy_between_two_incidents_takes_the_blame_for_the_later_one() -> None:
    """Why the invariant above excludes deploys that get linked: the last-deploy rule moves blame.

    A deploys, I1 and I2 follow, B deploys cleanly later: 1 of 2 deploys failed. A new deploy
    between I1 and I2 is blamed for I2, so 2 of 3 failed: the rate rises from 50% to 67%.
    """
    day = START + DAY
    deploys = [Deployment("A", "a", "production", True, day), Deployment("B", "a", "production", True, day + 10 * DAY)]
    incidents = [Incident("I1", "a", day + DAY, day + DAY + 60), Incident("I2", "a", day + 3 * DAY, day + 3 * DAY + 60)]
    data = Dataset(deploys, {}, {}, incidents)
    assert compute(data, {"a"}, START, END).change_failure_rate == 0.5
    data.deployments.append(Deployment("C", "a", "production", True, day + 2 * DAY))
    assert link_incidents(data) == {"I1": "A", "I2": "C"}
    assert compute(data, {"a"}, START, END).change_failure_rate == 2 / 3
