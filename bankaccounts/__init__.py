"""An event-sourced bank built on the eventsourcing library."""
