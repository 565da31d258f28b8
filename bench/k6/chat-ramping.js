// Streaming chat under a ramping arrival rate: from START_RATE up to PEAK_RATE requests per
// second, a hold at the peak, then back down. Finds where TTFT and errors start to climb.
//   k6 run -e KILN_URL=http://127.0.0.1:8000 -e PEAK_RATE=8 bench/k6/chat-ramping.js
import { streamChat, thresholds } from "./lib.js";

const peak = Number(__ENV.PEAK_RATE || 8);
const stage = __ENV.STAGE || "1m";

export const options = {
  scenarios: {
    ramping: {
      executor: "ramping-arrival-rate",
      startRate: Number(__ENV.START_RATE || 1),
      timeUnit: "1s",
      preAllocatedVUs: Number(__ENV.PRE_VUS || 8),
      maxVUs: Number(__ENV.MAX_VUS || 128),
      stages: [
        { target: Math.max(1, Math.round(peak / 2)), duration: stage },
        { target: peak, duration: stage },
        { target: peak, duration: stage },
        { target: 0, duration: "30s" },
      ],
    },
  },
  thresholds: thresholds(),
};

export default function () {
  streamChat();
}
