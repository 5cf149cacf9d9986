"""The Matrix bot's end-to-end-encryption trust machinery: its key store and saved
login (`store`), cross-signing its own device (`crosssign`), SAS emoji verification
with owners' devices, to-device (`verification`) and in a room
(`room_verification`), and what both SAS flows share (`sas_core`)."""
