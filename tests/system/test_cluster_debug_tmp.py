from tests.system.test_cluster_suites import *  # noqa
from tests.system.test_parity import sides, up_redis  # noqa
from tests.differential import WM
import orjson, pytest

async def test_dbg(sides, redis_client) -> None:
    over = orjson.dumps({"messages": [{"role":"user","content":"one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen","id":"a","created_at":"2024-01-01T00:00:01Z"}]})
    want, got = await sides.both("PUT", WM + "SIDE-ex4?context_window_max=20", over)
    print(want.status, got.status)
    print(await redis_client.keys("amp:*"))
