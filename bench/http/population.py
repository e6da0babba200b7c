"""Who the virtual users of a cell are: the seeded users, their tokens and their tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.http.options import (
    FRESH_USER,
    HISTORY_USER,
    LISTER_PREFIX,
    OPEN_LOOP_USERS,
    TOKEN_LIFETIME,
    WRITER_PREFIX,
    Options,
)
from bench.http.scenarios import Kind, Scenario, UserPool, VirtualUser
from bench.http.seeding import mint_token


@dataclass(slots=True)
class Population:
    writers: tuple[str, ...]
    listers: tuple[str, ...]
    tokens: dict[str, str]
    # The one task of bench-history and of bench-fresh (a new one before each fresh cell).
    single_tasks: dict[str, str] = field(default_factory=dict)


def make_population(options: Options, secret: str) -> Population:
    count = max(options.concurrency)
    if any(scenario.kind is Kind.OPEN_LOOP for scenario in options.scenarios):
        count = max(count, OPEN_LOOP_USERS)
    writers = tuple(f"{WRITER_PREFIX}{i}" for i in range(count))
    listers = tuple(f"{LISTER_PREFIX}{i}" for i in range(options.list_users))
    users = writers + listers + (HISTORY_USER, FRESH_USER)
    tokens = {user: mint_token(user, secret, TOKEN_LIFETIME) for user in users}
    return Population(writers, listers, tokens)


def virtual_users(
    scenario: Scenario,
    concurrency: int,
    population: Population,
    task_ids: dict[str, tuple[str, ...]],
) -> tuple[VirtualUser, ...]:
    if scenario.pool is UserPool.ANONYMOUS:
        return tuple(VirtualUser(i, "", "") for i in range(concurrency))
    if scenario.pool in (UserPool.HISTORY, UserPool.FRESH):
        user = HISTORY_USER if scenario.pool is UserPool.HISTORY else FRESH_USER
        task = (population.single_tasks[user],)
        return tuple(
            VirtualUser(i, user, population.tokens[user], task) for i in range(concurrency)
        )
    if scenario.pool is UserPool.BARE:
        # get one's users and tasks; the bare app needs no token.
        return tuple(
            VirtualUser(i, user, "", task_ids.get(user, ()))
            for i, user in enumerate(population.writers[:concurrency])
        )
    if scenario.pool is UserPool.LISTERS:
        # Fewer list users than virtual users: several readers share one (reads take no lock).
        listers = population.listers
        return tuple(
            VirtualUser(i, listers[i % len(listers)], population.tokens[listers[i % len(listers)]])
            for i in range(concurrency)
        )
    writers = population.writers[:concurrency]
    return tuple(
        VirtualUser(i, user, population.tokens[user], task_ids.get(user, ()))
        for i, user in enumerate(writers)
    )
