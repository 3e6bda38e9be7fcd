"""Expanded runs -> launch scripts and the manifest (the templates are in templates/)."""
