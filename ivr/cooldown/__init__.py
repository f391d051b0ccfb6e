"""Cool-down: after a hard call (flagged, warned, limited, ended by the operator) the operator
is paused at their desks for a wrap-up time, the pause reason carrying when it ends."""
