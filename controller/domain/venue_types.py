"""The eleven venue kinds of the city programme: canonical ids used in config, reports, pages."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

VENUE_TYPES: Final = MappingProxyType(
    {
        "transport_hub": {"zh": "交通枢纽", "en": "transport hub"},
        "leisure_square": {"zh": "休闲广场", "en": "leisure square"},
        "pedestrian_street": {"zh": "步行街", "en": "pedestrian street"},
        "university": {"zh": "高校", "en": "university"},
        "industrial_park": {"zh": "工业园区", "en": "industrial park"},
        "community": {"zh": "社区", "en": "residential community"},
        "convention_center": {"zh": "会展中心", "en": "convention & exhibition center"},
        "hospital": {"zh": "医院", "en": "hospital"},
        "shopping_mall": {"zh": "商场", "en": "shopping mall"},
        "star_hotel": {"zh": "星级酒店", "en": "star-rated hotel"},
        "office_building": {"zh": "商务楼", "en": "office building"},
    }
)
