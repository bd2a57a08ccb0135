from controller.domain.mac import called_station_mac, normalize_mac
from controller.domain.venue_types import VENUE_TYPES


def test_eleven_venue_types() -> None:
    assert len(VENUE_TYPES) == 11
    assert all(set(v) == {"zh", "en"} for v in VENUE_TYPES.values())


def test_mac_notations() -> None:
    want = "AA-BB-CC-DD-EE-0F"
    for v in ("aa:bb:cc:dd:ee:0f", "AA-BB-CC-DD-EE-0F", "aabb.ccdd.ee0f", "aabbccddee0f"):
        assert normalize_mac(v) == want
    assert normalize_mac("aa:bb:cc:dd:ee") is None
    assert normalize_mac("zz:bb:cc:dd:ee:0f") is None
    assert called_station_mac("00-11-22-33-44-55:i-Shijiazhuang") == "00-11-22-33-44-55"
    assert called_station_mac("001122334455") == "00-11-22-33-44-55"
