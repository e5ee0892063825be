"""The Textual console. The only package that imports Textual; nothing imports it back."""
