"""Build steps, declared: one ``Step`` shape (``steps.step``) with one generic assess and one generic run,
and a small factory per kind (``source``, ``export``, ``precision``, ``engine``); ``steps.model`` lists a
model's steps, ``steps.choices`` decides which ones a builder calls for."""
