"""The built-in backend plugins. Each module is a plugin registered like a third party's."""
