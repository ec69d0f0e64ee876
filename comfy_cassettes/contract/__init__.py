"""The admin API's contract: typed bodies and answers, the route table, and the OpenAPI document built from them."""
