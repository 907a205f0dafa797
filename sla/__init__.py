"""Service-level clocks in business time: calendars (`sla.calendar`) and due dates (`sla.clock`)."""
