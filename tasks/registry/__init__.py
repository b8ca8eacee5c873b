"""The served model folder: versions, promotion, rollback."""
