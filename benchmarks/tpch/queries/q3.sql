-- Q3 (shipping priority): retail (customer, orders) x logistics (lineitem) on the order key.
-- Rewrites: party-qualified table names; the group label l_orderkey is written o_orderkey AS l_orderkey
-- (equal on every joined row by l_orderkey = o_orderkey). The engine groups only by one party's columns
-- at a level that lets them label a result; retail's o_orderkey is that column for the retail issuer.
select o_orderkey as l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate, o_shippriority
from retail.customer, retail.orders, logistics.lineitem
where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey
  and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15'
group by o_orderkey, o_orderdate, o_shippriority
order by revenue desc, o_orderdate
limit 10;
