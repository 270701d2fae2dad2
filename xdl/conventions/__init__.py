"""What the data say about themselves: dimension layout, CF metadata rules and fill domains.

- :mod:`xdl.conventions.layout` - which dims are spatial (CF ``axis``/``standard_name``/names), time
  dims, descending y, periodic longitude.
- :mod:`xdl.conventions.cf` - CF valid masks (``_FillValue``, ``valid_range``, ...) and output attributes.
- :mod:`xdl.conventions.projection` - grid mappings and the Earth disk of geostationary views.
- :mod:`xdl.conventions.validity` - which values are data: CF rules or the user's mask, by label.
- :mod:`xdl.conventions.domains` - where filling is allowed (``domain="auto"``: Earth disk, land/sea
  masks, swaths, never-observed regions).

Submodules load on first use (``xdl.conventions.projection.earth_disk(ds)``).
"""

from ..lazy import attach

__getattr__, __dir__ = attach(__name__, globals(), {"layout", "cf", "projection", "domains", "validity"})
del attach
