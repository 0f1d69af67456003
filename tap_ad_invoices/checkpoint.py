"""Mid-stream STATE for streams that keep custom state (pending report ids, bookmarks)."""

from __future__ import annotations

from singer_sdk import Stream


class CheckpointingStream(Stream):
    """The SDK writes STATE at stream end and every 10,000 records; report ids must
    reach the target as soon as they exist, or a killed run re-requests them."""

    def checkpoint(self) -> None:
        """Emit STATE now: only ever after the records it covers were yielded."""
        self.state_manager.is_flushed = False
        self._write_state_message()
