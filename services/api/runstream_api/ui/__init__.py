"""The admin UI at /ui: server-rendered pages (Jinja) made lively with htmx, served by the
API process (``routes.router``). Pages call the same shared code as the API's routes;
nothing here applies a command, it sends it as the API does, with the signed-in token's
subject as the actor."""
