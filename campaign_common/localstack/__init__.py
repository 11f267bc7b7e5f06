"""The local stack behind `make run`: embedded Redis servers (`embedded`) and the three
services as child processes (`stack`)."""
