// Streaming chat at a constant arrival rate: RATE requests per second for DURATION, however
// slowly the server answers (open loop; k6 adds VUs up to MAX_VUS to keep the rate).
//   k6 run -e KILN_URL=http://127.0.0.1:8000 -e KILN_API_KEY=sk-… -e RATE=2 bench/k6/chat-constant-rate.js
import { streamChat, thresholds } from "./lib.js";

export const options = {
  scenarios: {
    constant: {
      executor: "constant-arrival-rate",
      rate: Number(__ENV.RATE || 2),
      timeUnit: "1s",
      duration: __ENV.DURATION || "1m",
      preAllocatedVUs: Number(__ENV.PRE_VUS || 8),
      maxVUs: Number(__ENV.MAX_VUS || 64),
    },
  },
  thresholds: thresholds(),
};

export default function () {
  streamChat();
}
