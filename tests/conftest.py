"""Suite-wide test settings.

Hypothesis's per-example deadline (200 ms by default) measures the machine, not the code: on a
shared 2-core CI runner a first example that imports a module, or one that waits for a core,
fails it. Speed is checked by the scripts under bench/, so the suite runs without deadlines.
"""

from hypothesis import settings

settings.register_profile("recset", deadline=None)
settings.load_profile("recset")
