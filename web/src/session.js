// One transfer in the browser, as p2pshare/session.py: the entry points the page calls.
// pairing.js pairs, wire.js runs the channel, sender.js and receiver.js carry out
// transfer.js's decisions, sinks.js and download.js hold what arrives. Progress goes out
// through onEvent:
//   {type: "code", code}                     the sender's code is ready
//   {type: "verify", keyMaterial}            the four security words can be shown
//   {type: "connected", path}                the data channel is open (path may be null)
//   {type: "offer", summary}                 (receiver) what the sender offers
//   {type: "progress", done, total}
//   {type: "file", name, blob, size}         (receiver) a verified download is ready
//                                            (blob null: it was streamed to the download)
//   {type: "text", text}                     (receiver) a text message arrived
// A sender awaits its confirmWords() after "connected", before anything is sent on the channel.

export { DeclinedError, InterruptedError, StorageError } from "./errors.js";
export { receiveFiles, summarise } from "./receiver.js";
export { checkOwnOffer, entriesFor, sendFiles } from "./sender.js";
