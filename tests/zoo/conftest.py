"""Every zoo test runs against an empty cache of its own and never the user's settings."""

import pytest

from kerasseg.zoo import metafiles


@pytest.fixture(autouse=True)
def isolated_zoo(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("kerasseg-home")
    monkeypatch.setenv("KERASSEG_HOME", str(home))
    for variable in ("KERASSEG_OFFLINE", "KERASSEG_MIRROR", "KERASSEG_ZOO_INDEX", "KERASSEG_DATA"):
        monkeypatch.delenv(variable, raising=False)
    # The local test servers must be reached directly, whatever proxy the machine has.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    metafiles.clear_cache()
    yield home
    metafiles.clear_cache()
