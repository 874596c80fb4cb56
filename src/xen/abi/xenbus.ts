// The xenbus device handshake (io/xenbus.h): the states a frontend and a
// backend publish in their "state" nodes. The same in both ABIs.

export const XenbusState = {
  Unknown: 0,
  Initialising: 1,
  InitWait: 2,
  Initialised: 3,
  Connected: 4,
  Closing: 5,
  Closed: 6,
  Reconfiguring: 7,
  Reconfigured: 8,
} as const;
