import asyncio

from clauderon.daemon.manager import NamedLocks


def test_locks_serialise_per_name_and_are_forgotten_when_unused():
    async def scenario() -> list[str]:
        locks = NamedLocks()
        order: list[str] = []

        async def worker(name: str, tag: str) -> None:
            async with locks(name):
                order.append(f"{tag}+")
                await asyncio.sleep(0.01)
                order.append(f"{tag}-")

        await asyncio.gather(worker("a", "1"), worker("a", "2"), worker("b", "3"))
        assert not locks.busy("a") and not locks.busy("b")
        for i in range(1000):  # names asked for once leave nothing behind
            async with locks(f"n{i}"):
                pass
        assert locks._entries == {}
        return order

    order = asyncio.run(scenario())
    a = [e for e in order if e[0] in "12"]
    assert a in (["1+", "1-", "2+", "2-"], ["2+", "2-", "1+", "1-"])
