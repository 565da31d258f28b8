import { credentials, Server, ServerCredentials, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createGrpcHealthServer,
  GrpcHealthClient,
  GrpcHealthService,
  GrpcServingStatus,
} from "./grpc-health";

/** What the predicate answers next: a value, or a rejection (a broken health source). */
let answer: boolean | "reject" = true;
let server: Server;
let client: GrpcHealthClient;

beforeAll(async () => {
  server = new Server();
  server.addService(
    GrpcHealthService,
    createGrpcHealthServer(["kiln.v1.Worker"], async () => {
      if (answer === "reject") throw new Error("backend gone");
      return answer;
    }),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  client = new GrpcHealthClient(`127.0.0.1:${port}`, credentials.createInsecure());
});

afterAll(() => {
  client.close();
  server.forceShutdown();
});

const check = (service: string) =>
  new Promise<{ status: GrpcServingStatus } | { code: number }>((resolve) => {
    client.check({ service }, (err, res) => resolve(err ? { code: err.code } : res));
  });

describe("grpc.health.v1 Check", () => {
  it("answers from the predicate on every call, for the process and its named service", async () => {
    answer = true;
    expect(await check("")).toEqual({ status: GrpcServingStatus.SERVING });
    expect(await check("kiln.v1.Worker")).toEqual({ status: GrpcServingStatus.SERVING });
    answer = false;
    expect(await check("")).toEqual({ status: GrpcServingStatus.NOT_SERVING });
    answer = "reject";
    expect(await check("kiln.v1.Worker")).toEqual({ status: GrpcServingStatus.NOT_SERVING });
  });

  it("is NOT_FOUND for a service it does not know", async () => {
    answer = true;
    expect(await check("kiln.v1.Router")).toEqual({ code: status.NOT_FOUND });
  });
});
