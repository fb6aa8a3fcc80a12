"""The storefront: pages a person clicks through (HTML, CSS and ES modules in static/), served by
the api at `/`. The pages are a client of the public JSON API with the customer's token: nothing
here reads the database or talks to Temporal."""
