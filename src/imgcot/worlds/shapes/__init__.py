"""The shapes world: imgcot's embedded default text-to-image world with a known truth."""
