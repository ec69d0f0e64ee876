"""The admin API's contract: typed bodies and answers, the route table, and the OpenAPI document built from them."""

# Every admin route is under this prefix. Here, not in routes.py, so that what only needs the prefix (the server's
# config, the pytest plugin's options) does not load pydantic with the route table.
ADMIN_PREFIX = "/__cassettes__"
