"""Kassa's services as plain functions (the api calls them directly) and the thin activities
that the worker registers around them."""
